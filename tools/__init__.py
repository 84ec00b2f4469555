"""Tools that are neither tests nor benchmarks: hostile-input and soak runs against our server, atheris fuzz targets
(``python -m tools.hostile_server``)."""
