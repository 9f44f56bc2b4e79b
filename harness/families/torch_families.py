"""torch's four families: the Elman RNNs (tanh, relu), LSTM and GRU, whose reference is torch's own
module. Gate layouts as torch's: LSTM rows [i, f, g, o]; GRU rows [r, z, n] with
n = tanh(W_in x + b_in + r * (W_hn h + b_hn)) and h' = (1 - z) * n + z * h.

On CUDA torch's modules run cuDNN, which breaks two parts of the CPU contract: it refuses a
non-contiguous hx, and a backward pass in eval mode. Each family names its module there
(``device_modules``), so an implementation that behaves as torch does on CUDA is reported *as
torch*, not failed."""

from __future__ import annotations

from torch import nn

from harness.core.families import Family

STEPS = "harness.diagnosis.steps"  # the families' own bug signatures, loaded when asked

RNN_TANH = Family("rnn_tanh", nn.RNN, gates=1, extra_kwargs={"nonlinearity": "tanh"}, order=0,
                  baseline="torch-rnn-tanh", reference_label="torch rnn_tanh",
                  device_modules={"cuda": nn.RNN}, signatures=f"{STEPS}:rnn_tanh_signatures",
                  description="Elman RNN, h' = tanh(W_ih x + b_ih + W_hh h + b_hh)")
RNN_RELU = Family("rnn_relu", nn.RNN, gates=1, extra_kwargs={"nonlinearity": "relu"}, order=1,
                  baseline="torch-rnn-relu", reference_label="torch rnn_relu",
                  device_modules={"cuda": nn.RNN}, signatures=f"{STEPS}:rnn_relu_signatures",
                  description="Elman RNN, h' = relu(W_ih x + b_ih + W_hh h + b_hh)")
LSTM = Family("lstm", nn.LSTM, gates=4, state=("h", "c"), supports_proj=True, order=2,
              baseline="torch-lstm", reference_label="torch lstm",
              device_modules={"cuda": nn.LSTM}, gate_names=("i", "f", "g", "o"),
              signatures=f"{STEPS}:lstm_signatures",
              description="LSTM, rows [i, f, g, o], optional projection of h")
GRU = Family("gru", nn.GRU, gates=3, order=3, baseline="torch-gru", reference_label="torch gru",
             device_modules={"cuda": nn.GRU}, gate_names=("r", "z", "n"),
             signatures=f"{STEPS}:gru_signatures",
             description="GRU, rows [r, z, n], the reset gate after the hidden matmul")
