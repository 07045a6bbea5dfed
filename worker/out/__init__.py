"""Stage: feeds out: the stream rendered as Atom 1.0 and JSON Feed 1.1 (render, pure) and served over HTTP
by `feedstream serve` (server)."""
