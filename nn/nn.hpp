// flax.linen in one include: modules, layers (linear, conv, attention, normalization), activations,
// initializers.
#pragma once
#include "activation.hpp"
#include "attention.hpp"
#include "combinators.hpp"
#include "conv.hpp"
#include "initializers.hpp"
#include "linear.hpp"
#include "module.hpp"
#include "normalization.hpp"
#include "rng.hpp"
#include "stochastic.hpp"
