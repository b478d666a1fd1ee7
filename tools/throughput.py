#!/usr/bin/env python
"""Images per second of DLA, every engine side by side: ``paddle-dla bench``, as a
script. Run with --help for examples."""
from _subcommand import run

if __name__ == '__main__':
    run('bench')
