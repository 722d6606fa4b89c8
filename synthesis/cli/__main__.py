"""``python -m synthesis.cli``: the ``lexibatch`` program."""

from synthesis.cli import program

program()
