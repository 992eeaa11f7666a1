// kakunin/kakunin.hpp — everything a strategy needs: #include <kakunin/kakunin.hpp>.
// (Unit tests add <kakunin/testing.hpp>; PKCS#11 and PostgreSQL backends have their own headers.)
#pragma once

#include "kakunin/audit.hpp"
#include "kakunin/audit_trail.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/certificate.hpp"
#include "kakunin/clock.hpp"
#include "kakunin/decimal.hpp"
#include "kakunin/decision.hpp"
#include "kakunin/error.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/kms.hpp"
#include "kakunin/money.hpp"
#include "kakunin/notifier.hpp"
#include "kakunin/order.hpp"
#include "kakunin/replay.hpp"
#include "kakunin/revocation.hpp"
#include "kakunin/scope.hpp"
#include "kakunin/scope_extension.hpp"
#include "kakunin/software_kms.hpp"
#include "kakunin/version.hpp"
