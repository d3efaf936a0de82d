{
  "targets": [
    {
      "target_name": "aludel",
      "sources": [
        "native/addon.c",
        "native/openssl-api.c",
        "native/socket.c",
        "native/poll.c",
        "native/tls.c",
        "native/file.c",
        "native/diag.c",
        "native/stream.c",
        "native/ethtool.c"
      ],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2", "-fvisibility=hidden"],
      "libraries": ["-ldl"]
    }
  ]
}
