from bkprof.cli import run

run()
