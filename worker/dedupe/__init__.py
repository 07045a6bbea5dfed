"""Stage: what makes two articles the same: canonical URL and text keys (keys),
MinHash signatures for near-copies (minhash), a feed's recurring paragraphs (boilerplate). Pure."""
