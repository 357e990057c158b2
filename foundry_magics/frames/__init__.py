"""The DataFrame faces: thin front-ends over the operation core (`foundry_magics.ops`).

`pandas` (`df.foundry`), `polars` (`pl_df.foundry`) and `spark` (`sdf.foundry`, with its
driver / executor / estimate / batch / usage modules) only convert their data to `ops.Rows`
and the `Outcome` back; `evaluate` is the face of `ops.evaluate`; `hook` registers each
accessor when its library is imported. `ops` and `accessor` are old import paths.

Importing this package imports neither pandas, polars, pyspark nor the engine.
"""
