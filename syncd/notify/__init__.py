"""Telling people: e-mail digests of failed syncs, over SMTP and to chat or webhook targets."""
