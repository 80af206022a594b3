"""`adapterserve train`: fine-tune an adapter + head on the frozen backbone and export a servable folder.

cli.add_parser(subparsers) registers the `train` sub-command; cli.run(args) runs it.
"""

from .cli import add_parser, run

__all__ = ["add_parser", "run"]
