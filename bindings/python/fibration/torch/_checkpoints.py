"""ft.load_decoder: the reference module of a checkpoint directory (or of a
base in the library's format) chosen by its model type: a decoder for
llama-family and GPT-2 checkpoints, BERT's encoder for "bert"."""

import os

from . import _decoders, _encoder


def load_decoder(path, config=None):
    """A LlamaDecoder or Gpt2Decoder (float32, eval mode) holding a
    checkpoint directory's weights (the original, or a base written in its
    layout), or a base file in the library's format; the latter needs
    `config`: the original directory, its config.json, or its dict. A
    checkpoint of model type "bert" gives its BertEncoder (load_encoder)."""
    described_by = path if os.path.isdir(path) else config
    if described_by is not None and \
            _decoders._read_config(described_by).get("model_type") == "bert":
        return _encoder.load_encoder(path, config)
    return _decoders.load_decoder(path, config)
