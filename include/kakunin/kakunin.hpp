// kakunin/kakunin.hpp — everything a strategy needs: #include <kakunin/kakunin.hpp>.
#pragma once

#include "kakunin/clock.hpp"
#include "kakunin/decimal.hpp"
#include "kakunin/decision.hpp"
#include "kakunin/error.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/kms.hpp"
#include "kakunin/money.hpp"
#include "kakunin/order.hpp"
#include "kakunin/replay.hpp"
#include "kakunin/scope.hpp"
#include "kakunin/version.hpp"
