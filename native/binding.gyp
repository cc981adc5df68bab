{
  "targets": [
    {
      "target_name": "d2v_blas",
      "sources": ["d2v_blas.c"],
      "libraries": ["-lopenblas"],
      "cflags": ["-O2", "-std=c11", "-Wall", "-Wextra"]
    }
  ]
}
