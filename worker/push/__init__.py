"""WebSub: our subscriptions to publishers' hubs (websub.py: the rules, pure; subscriber.py: the manager
and the callback under /websub/ on ``feedstream serve``). See docs/push.md."""
