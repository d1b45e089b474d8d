// Precompiled header: the LibTorch headers every torch-using target needs.
// Only headers that never change belong here.
#pragma once
#include <torch/torch.h>
