"""One module per ``cxrdenoise`` subcommand (see ``cxrdenoise.cli.COMMANDS``): argument parsing only, over the
package's functions."""
