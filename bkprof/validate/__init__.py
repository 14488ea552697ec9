"""`bkprof validate` as a library: train small ResNet-BK language models of each variant (and their
controls and a Transformer reference) on WikiText-2, and judge the published quality claims at equal
width and at equal training compute. `bkprof.validate.runner.run_grid` is the entry point."""
