"""Side-by-side benchmarks of the plugin against sparsify and Delphi (`make bench`)."""
