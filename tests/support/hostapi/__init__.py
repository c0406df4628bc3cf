"""Fake git host APIs (GitHub, GitLab, Gitea/Forgejo) that check every request syncd sends
against the host's published API description (specs/, with where each came from in
specs/README.md) and keep the state a test asserts on.

- validate: the one validating core (OpenAPI 3 and Swagger 2 adapters, jsonschema)
- server: the https server, request log, violations and fault knobs every fake shares
- github, gitlab, gitea: one fake per host
"""
