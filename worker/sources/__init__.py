"""Sources managed at run time (issue 15): what a source may be (spec), decisions about the set of
them (plan), a process's live view of them (live), OPML in and out (opml), and the operations the
admin API and the CLI share (manage).

The pure parts (spec, plan, opml) import only models and errors; import them from their modules.
"""
