{
  "targets": [
    {
      "target_name": "baton",
      "sources": [
        "native/addon.c",
        "native/errors.c",
        "native/poller.c",
        "native/channel.c",
        "native/probe.c",
        "native/sockopt.c",
        "native/fdutil.c",
        "native/process.c",
        "native/notify.c",
        "native/reexec.c",
        "native/http2.c",
        "native/reuseport.c",
        "native/readiness.c"
      ],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "libraries": ["-ldl"],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
      "conditions": [
        ["OS!='linux'", { "defines": ["BATON_UNSUPPORTED_OS"] }]
      ]
    }
  ]
}
