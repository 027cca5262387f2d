{
  "variables": { "have_openblas%": "<!(node native/detect-blas.cjs)", "have_dnnl%": "<!(node native/detect-dnnl.cjs)", "have_zlib%": "<!(node native/detect-zlib.cjs)", "have_node_openssl%": "<!(node native/detect-node-openssl.cjs)", "have_mpi%": "<!(node native/detect-mpi.cjs)" },
  "targets": [
    {
      "target_name": "slimfit_engine",
      "sources": ["native/addon.cc", "native/kernels.cc", "native/gemm_own.cc", "native/gemm_bf16.cc", "native/dense_step.cc", "native/lowp.cc", "native/conv_step.cc", "native/quant.cc"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-O3", "-std=c++17", "-fexceptions", "-ffp-contract=off", "-fno-math-errno", "-Wno-ignored-attributes"],
      "libraries": ["-lpthread"],
      "conditions": [
        ["have_openblas==1", {
          "defines": ["SLIMFIT_HAVE_OPENBLAS"],
          "libraries": ["-lopenblas"]
        }],
        ["have_dnnl==1", {
          "defines": ["SLIMFIT_HAVE_DNNL"],
          "libraries": ["-ldnnl"]
        }]
      ]
    },
    {
      "target_name": "slimfit_gather",
      "sources": ["src/loader/native/gather.c"],
      "cflags": ["-O3", "-std=gnu11"],
      "libraries": ["-lpthread"]
    },
    {
      "target_name": "slimfit_mem",
      "sources": ["src/core/native/mem.c"],
      "cflags": ["-O2", "-std=gnu11"]
    },
    {
      "target_name": "slimfit_csv",
      "sources": ["src/formats/native/csv.c"],
      "cflags": ["-O3", "-std=gnu11", "-ffp-contract=off"]
    }
  ],
  "conditions": [
    ["have_zlib==1", {
      "targets": [
        {
          "target_name": "slimfit_png",
          "sources": ["src/formats/native/png.c", "src/formats/native/gunzip.c"],
          "cflags": ["-O2", "-std=gnu11"],
          "libraries": ["-lz", "-lpthread"]
        }
      ]
    }],
    ["have_node_openssl==1", {
      "targets": [
        {
          "target_name": "slimfit_sha256",
          "sources": ["src/store/native/sha256.c"],
          "cflags": ["-O2", "-std=gnu11"]
        }
      ]
    }],
    ["have_mpi==1", {
      "targets": [
        {
          "target_name": "slimfit_mpi",
          "sources": ["src/core/native/mpi.c"],
          "cflags": ["-O2", "-std=gnu11"],
          "defines": ["OMPI_SKIP_MPICXX=1"],
          "include_dirs": ["<!@(node native/detect-mpi.cjs --incdirs)"],
          "libraries": ["<!@(node native/detect-mpi.cjs --libs)"]
        }
      ]
    }]
  ]
}
