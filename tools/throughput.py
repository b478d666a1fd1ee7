#!/usr/bin/env python
"""Images per second of DLA, every engine side by side: ``paddle-dla bench``, kept here
for the documentation and scripts that call it by path. Run with --help for examples."""
from _subcommand import run

if __name__ == '__main__':
    run('bench')
