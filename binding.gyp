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
        "native/ethtool.c",
        "native/tickets.c",
        "native/ktls-keys.c",
        "native/tls-client.c",
        "native/copy.c",
        "native/process.c"
      ],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2", "-fvisibility=hidden"],
      "libraries": ["-ldl"]
    },
    {
      "target_name": "aludel-preload",
      "type": "shared_library",
      "product_name": "aludel-preload",
      "product_prefix": "",
      "product_extension": "so",
      "sources": ["native/preload.c", "native/preload-keys.c", "native/preload-secrets.c", "native/preload-ktls.c", "native/preload-ossl102.c", "native/preload-bio.c", "native/preload-exec.c", "native/ktls-keys.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2", "-fvisibility=hidden"],
      "libraries": ["-ldl", "-lpthread"]
    }
  ]
}
