# The native engine. scripts/build-native.mjs finds libtorch and passes these variables with -D;
# the defaults describe Debian's libtorch-dev.
{
  "variables": {
    "torch_inc%": "/usr/include",
    "torch_lib%": "/usr/lib/x86_64-linux-gnu",
    "cxx11_abi%": "1",
    "with_cuda%": "0",
    "with_gloo%": "0",
    "with_nccl%": "0",
    "cuda_inc%": "",
    "alloc_const%": "1",
    "alloc_copy_data%": "0"
  },
  "targets": [
    {
      "target_name": "weakseg_native",
      "sources": [
        "native/addon.cc",
        "native/ops.cc",
        "native/nn_ops.cc",
        "native/optim.cc",
        "native/alloc.cc",
        "native/lattice.cc",
        "native/dist.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<(torch_inc)",
        "<(torch_inc)/torch/csrc/api/include"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "_GLIBCXX_USE_CXX11_ABI=<(cxx11_abi)",
        "WS_ALLOC_CONST=<(alloc_const)",
        "WS_ALLOC_COPY_DATA=<(alloc_copy_data)"
      ],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++14"],
      "cflags_cc": [
        "-std=c++17",
        "-frtti",
        "-fexceptions",
        "-O2",
        "-Wno-unused-parameter",
        "-Wno-missing-field-initializers",
        "-Wno-deprecated-declarations"
      ],
      "libraries": [
        "-L<(torch_lib)",
        "-Wl,-rpath,<(torch_lib)",
        "-ltorch",
        "-ltorch_cpu",
        "-lc10"
      ],
      "conditions": [
        ["with_gloo==1", {
          "defines": ["WS_WITH_GLOO", "USE_C10D_GLOO"]
        }],
        ["with_nccl==1", {
          "defines": ["WS_WITH_NCCL", "USE_C10D_NCCL"],
          "include_dirs": ["<(cuda_inc)"]
        }],
        ["with_cuda==1", {
          "libraries": ["-Wl,--no-as-needed", "-ltorch_cuda", "-lc10_cuda", "-Wl,--as-needed"]
        }]
      ]
    }
  ]
}
