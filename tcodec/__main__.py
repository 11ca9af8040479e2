from tcodec.cli import run

run()
