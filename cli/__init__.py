"""The command line (cli/main.py): `lightning fit | validate | test | predict | sample | evaluate | judge | export |
plot`.

One module per command; each parses its arguments and calls the library (training, evaluation). No command
module imports another.
"""
