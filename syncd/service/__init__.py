"""The use cases: what syncd does when asked, with its dependencies handed in, no HTTP."""
