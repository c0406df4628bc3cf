"""Git, through pygit2: the only package that imports it.

`source` talks to remotes and keeps the mirrors, `network` makes one network operation (with
`remote`: a remote's key and credentials), `fetching` brings a ref's commits into a mirror (on
the connection an ls-remote opened, when there is one), `pushing` sets a branch on the remote,
`tls` holds the trust, `trees` reads a commit's files and diffs, `commits` builds the export's
commits, `mirrors` and `failures` say what a broken mirror or a failed attempt means.
`signatures` reads a commit's own signature and `verify` judges it (with `ssh_verify`,
`gpg_verify` and `programs`: ssh-keygen and gpg, bounded).
"""

from syncd.git.network import GitObserver
from syncd.git.remote import Remote, remote_key
from syncd.git.source import GitSource
from syncd.git.trees import FileChange, TreeEntry

__all__ = ["FileChange", "GitObserver", "GitSource", "Remote", "TreeEntry", "remote_key"]
