//! llama-quantize's presets (`Q4_K_M`, …): the ggml type llama.cpp chooses for
//! each tensor of a model under a file type, with its fallbacks for rows a
//! K-quant cannot hold.
