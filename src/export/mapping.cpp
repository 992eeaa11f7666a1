// The built-in regulatory mapping of the compliance export: which package file evidences which
// requirement, with the text the mapping relies on. Kept as data (a JSON document) so that it can
// be corrected without touching code: `kakunin export --mapping FILE` replaces it.
//
// Source: the project's regulatory notes, which cite the article numbers as the regulations'
// texts have them:
//   - Regulation (EU) 2023/1114 (MiCA): Art. 68 governance, Art. 68(9) records, Art. 94 powers;
//   - Commission Delegated Regulation (EU) 2025/1140 (MiCA record-keeping), Art. 2;
//   - Commission Delegated Regulation (EU) 2017/589 (MiFID II RTS 6): Arts. 12, 15, 16 — the
//     reference set of controls for algorithmic trading, not binding on every crypto firm.
#include <nlohmann/json.hpp>
#include <string>

#include "kakunin/export.hpp"

namespace kakunin {
namespace {

constexpr const char* mapping_text = R"json([
  {
    "requirement": "Records of all crypto-asset services, activities, orders and transactions, kept for five years (extendable to seven on request of the competent authority)",
    "instrument": "Regulation (EU) 2023/1114 (MiCA)",
    "provision": "Art. 68(9)",
    "evidence": ["audit/extract.jsonl", "proofs/inclusion.jsonl", "proofs/consistency.jsonl", "audit/latest-checkpoint.jsonl", "audit/ca.jsonl"],
    "how": "Every order decision of the agent in the period is a signed record in a Merkle log; each record comes with its inclusion proof into a signed checkpoint."
  },
  {
    "requirement": "Records let the authority reconstitute each key stage of each order; corrections are visible together with the content before the correction; records cannot be manipulated or altered; order and transaction records are made immediately",
    "instrument": "Commission Delegated Regulation (EU) 2025/1140",
    "provision": "Art. 2",
    "evidence": ["audit/extract.jsonl", "proofs/inclusion.jsonl", "proofs/consistency.jsonl", "audit/latest-checkpoint.jsonl"],
    "how": "Records carry the order, the verdict, every reason and the scores; they are written when the decision is made; a change to any record breaks its signature, its inclusion proof and every later checkpoint; a correction can only be a new record; consistency proofs show that later checkpoints extend earlier ones."
  },
  {
    "requirement": "Supervisory powers, including requests for records",
    "instrument": "Regulation (EU) 2023/1114 (MiCA)",
    "provision": "Art. 94",
    "evidence": ["manifest.json", "manifest.sig", "report.html"],
    "how": "The package answers a request for the records of one agent over a period; the manifest lists every file with its SHA-256 and is signed by the CA key."
  },
  {
    "requirement": "Governance arrangements: policies and procedures, internal control and risk assessment",
    "instrument": "Regulation (EU) 2023/1114 (MiCA)",
    "provision": "Art. 68",
    "evidence": ["registration.json", "approvals/scope.json", "certificates/*.json", "baseline/*.approval.json", "audit/ca.jsonl", "timeline.json"],
    "how": "Who created the agent and for what; the named person who signed its scope and its behavioural baseline; incident acknowledgements, reviews and re-enables signed by named people and recorded in the CA's signed log."
  },
  {
    "requirement": "Pre-trade controls that block orders automatically: price collars, maximum order value, maximum order volume, maximum messages",
    "instrument": "Commission Delegated Regulation (EU) 2017/589 (MiFID II RTS 6)",
    "provision": "Art. 15(1)",
    "evidence": ["certificates/*.json", "certificates/*.pem", "approvals/scope.json", "audit/extract.jsonl"],
    "how": "The limits are in a critical extension of the agent's certificate (max_transaction, limits.price_collar_bps, limits.max_order_quantity, limits.max_orders_per_second for new orders, limits.max_messages_per_second for new, amend and cancel requests together); each order, amend and cancel request is a record of its decision (order.*, amend.*, cancel.*), and each rejected one names the limit it breached (message_rate_exceeded for the message limit)."
  },
  {
    "requirement": "Market and credit limits tied to capital and strategy",
    "instrument": "Commission Delegated Regulation (EU) 2017/589 (MiFID II RTS 6)",
    "provision": "Art. 15(4)",
    "evidence": ["certificates/*.json", "approvals/scope.json"],
    "how": "limits.max_daily_notional in the certified scope."
  },
  {
    "requirement": "Block instruments the trader is not permitted to trade",
    "instrument": "Commission Delegated Regulation (EU) 2017/589 (MiFID II RTS 6)",
    "provision": "Art. 15(5)",
    "evidence": ["certificates/*.json", "approvals/scope.json", "audit/extract.jsonl"],
    "how": "The certified instrument, counterparty and region lists; orders outside them are rejected with instrument_not_allowed, counterparty_not_allowed or region_not_allowed."
  },
  {
    "requirement": "Kill functionality: cancel any or all unexecuted orders immediately, and identify which algorithm and trader each order came from",
    "instrument": "Commission Delegated Regulation (EU) 2017/589 (MiFID II RTS 6)",
    "provision": "Art. 12",
    "evidence": ["timeline.json", "audit/extract.jsonl", "crl.pem", "certificates/*.pem"],
    "how": "Every halt (the kill switch, an automatic halt on the anomaly score, a revocation, an escalation) is a guard.halted record with who and why, after which every new order is rejected (reason halted); with it the Guard hands the ids of every order still working to the trading system's cancel callback at once and records them (guard.cancel_all: the halt, who, why and order_ids); the venue's confirmations are execution.cancelled records, and an order that filled instead shows as execution.fill. Automatic revocations are listed on the CRL; every record names the agent and the certificate that identified it. What the records prove: which orders the Guard knew to be working (those it allowed, less those the venue reported done) and that their cancellation was requested at the halt; not that the venue cancelled them (its reports do), nor anything about orders sent around the Guard. A Guard that tracks no working orders (no lifecycle limit in its scope and no capacity in its options, docs/lifecycle.md) has no ids to hand over."
  },
  {
    "requirement": "After an automatic halt, trading stays disabled until a designated staff member re-enables it",
    "instrument": "Commission Delegated Regulation (EU) 2017/589 (MiFID II RTS 6)",
    "provision": "Art. 15(3)",
    "evidence": ["timeline.json", "audit/extract.jsonl", "audit/ca.jsonl"],
    "how": "Every guard.resumed entry names the person who re-enabled the agent; in the CA log it carries that person's signature."
  },
  {
    "requirement": "Real-time monitoring with alerts within five seconds",
    "instrument": "Commission Delegated Regulation (EU) 2017/589 (MiFID II RTS 6)",
    "provision": "Art. 16",
    "evidence": ["timeline.json", "audit/extract.jsonl", "report.html"],
    "how": "Each order is scored in-process before it leaves; warnings (score at or above 0.75) open an incident at the time of the order, and their timestamps are in the records."
  }
])json";

}  // namespace

const std::string& default_regulatory_mapping_json() {
    static const std::string text = nlohmann::json::parse(mapping_text).dump(2);
    return text;
}

}  // namespace kakunin
