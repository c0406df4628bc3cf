"""Reports back to the git host: a commit status for each run, and the plan of a pull request
(a status on its head commit and one comment, edited in place).

- host: what syncd asks of a git host's API (`Host`), and the status it sets
- hosts/: one client per host (GitHub, GitLab, Gitea/Forgejo), built from `providers:`
- render: the words and the Markdown a report carries
- reporter: the queue between a sync and the host (retried, counted, never on a sync's path)
- runs: the engine's observer that reports each run on its commit

The use case that plans a pull request, from its webhook to its status and comment, is
`syncd.service.pull_plans`.
"""
