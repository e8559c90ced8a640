// flax.linen in one include: modules, layers, activations, initializers.
#pragma once
#include "activation.hpp"
#include "combinators.hpp"
#include "initializers.hpp"
#include "linear.hpp"
#include "module.hpp"
#include "normalization.hpp"
#include "rng.hpp"
#include "stochastic.hpp"
