from verbatim.cli import cli

cli()
