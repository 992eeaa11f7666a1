"""The LLM-agent example as a test: each attempt the model makes past its limits is refused with
its reason, and only the order inside the scope reaches the venue."""

import llm_agent_loop


def test_the_scripted_model_is_refused_each_time_it_goes_past_its_limits():
    results, sent = llm_agent_loop.run()
    assert [r["status"] for r in results] == ["placed", "rejected", "rejected", "refused", "rejected"]
    assert results[0]["reasons"] == [] and results[0]["result"] == {"venue_order_id": "v-1"}
    assert results[1]["reasons"] == ["max_order_quantity_exceeded"]  # over its scope
    assert results[2]["reasons"] == ["instrument_not_allowed"]  # an instrument it may not trade
    assert "force: unknown argument" in results[3]["problems"][0]  # no bypass flag
    assert results[4]["reasons"] == ["max_transaction_exceeded", "max_order_quantity_exceeded"]
    assert "cannot" in results[4]["message"] or "no argument" in results[4]["message"]
    assert sent == [("BTC_EUR", "0.25", "breakout above the 4h range")]
