"""Small, randomly initialised TACO models of the real structure, for tests."""

import torch

from tcodec.models.taco import TacoConfig, TacoModel

TINY = TacoConfig(N=32, M=40, slices=(8, 8, 8, 8, 8), text_dim=384, residual_blocks=1,
                  context_channels=(32, 24), rates=4)


def tiny_model(seed: int = 0, config: TacoConfig = TINY) -> TacoModel:
    torch.manual_seed(seed)
    model = TacoModel(config)
    with torch.no_grad():  # the adapter starts silent; make the text matter in tests
        for name, parameter in model.named_parameters():
            if name.endswith("gamma"):
                parameter.fill_(0.5)
    return model
