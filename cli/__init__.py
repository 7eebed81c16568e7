"""The command line: `lightning fit | validate | test | predict | sample | evaluate | judge | export` (cli/main.py).

One module per command; each parses its arguments and calls the library (training, evaluation). No command
module imports another.
"""
