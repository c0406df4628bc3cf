"""Git, through pygit2: the only package that imports it.

`source` talks to remotes and keeps the mirrors, `tls` holds the trust, `trees` reads a
commit's files and diffs, `commits` builds the export's commits, `mirrors` and `failures` say
what a broken mirror or a failed attempt means.
"""

from syncd.git.source import GitObserver, GitSource, Remote, remote_key
from syncd.git.trees import FileChange, TreeEntry

__all__ = ["FileChange", "GitObserver", "GitSource", "Remote", "TreeEntry", "remote_key"]
