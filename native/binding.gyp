{
  "targets": [
    {
      "target_name": "d2v_native",
      "sources": ["d2v_native.c"],
      "libraries": ["-lopenblas", "-ldl", "-lpthread"],
      "cflags": ["-O2", "-std=gnu11", "-Wall", "-Wextra"]
    }
  ]
}
