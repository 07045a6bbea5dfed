"""Stage: the pipeline's jobs wired from the stages. Each reads its state, fetches, asks a pure
function what the outcome means (decide.py) and applies the answer with one store call.

context (what a worker process shares), queues (what goes on RQ), poll (a feed), pages and
articles (an entry's page to an article), entries (the extract job), mail (newsletters),
decide and schedule (pure rules)."""
