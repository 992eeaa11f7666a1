// kakunin/fwd.hpp — forward declarations of Kakunin's public types, for headers that only pass
// them around.
#pragma once

namespace kakunin {
class Clock;
class SystemClock;
class ManualClock;
class Currency;
class Error;
class Guard;
class Kms;
class ReasonSet;
struct Decimal;
struct Decision;
struct KeyHandle;
struct Money;
struct Order;
struct PreTradeLimits;
struct PublicKeyInfo;
struct Scope;
struct TradingWindow;
struct Wide;
}  // namespace kakunin
