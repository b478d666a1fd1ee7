#!/usr/bin/env python
"""Top-1/top-5 of DLA models on ILSVRC2012 val against the published table: ``paddle-dla
eval``, as a script. See --help."""
from _subcommand import run

if __name__ == '__main__':
    run('evaluate')
