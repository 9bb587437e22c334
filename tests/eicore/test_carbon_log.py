"""The Carbon log parser on lines shaped like EI 6.x's own logs, in both layouts it shipped."""

from __future__ import annotations

import pytest

from eicore.carbon_log import (
    LOG_MEDIATOR,
    count_log_mediator,
    current_members,
    member_events,
    parse_line,
    parse_lines,
)

OLD = ("TID: [-1234] [] [2017-11-29 15:45:00,111]  INFO "
       "{org.apache.synapse.mediators.builtin.LogMediator} -  To: /services/SampleProxy, "
       "MessageID: urn:uuid:8f2c3a1e-0b5e-4b0e-9c57-2c3a8f1d7e11, Direction: request "
       "{org.apache.synapse.mediators.builtin.LogMediator}")
NEW = ("[2019-03-14 10:20:31,178] [-1234] [] [PassThroughMessageProcessor-7]  INFO "
       "{org.apache.synapse.mediators.builtin.LogMediator} -  To: /services/SampleProxy, "
       "MessageID: urn:uuid:5d1b1c9e-3f0a-4c55-a7a1-1f3c9d2b6e40, Direction: request, "
       "Envelope: <?xml version='1.0' encoding='utf-8'?><soapenv:Envelope/>")
TENANT = ("[2019-03-14 10:20:32,001] [1] [] [PassThroughMessageProcessor-2] "
          "[admin@carbon.super] ERROR {org.apache.synapse.core.axis2.Axis2Sender} -  "
          "Unexpected error during sending message out")
JOINED = ("[2019-03-14 10:21:00,010] [-1] [] [hz._hzInstance_1_wso2.ei.domain.cached.thread-2]  "
          "INFO {org.wso2.carbon.core.clustering.hazelcast.wka.WKABasedMembershipScheme} -  "
          "Member joined [d2e1a1b6-7c1f-4b4e-8b1f-0f6f7d0c2a31]: /10.0.0.5:4100")
LEFT_OLD = ("TID: [-1] [] [2017-11-29 15:50:00,000]  INFO "
            "{org.wso2.carbon.core.clustering.hazelcast.wka.WKABasedMembershipScheme} -  "
            "Member left [d2e1a1b6-7c1f-4b4e-8b1f-0f6f7d0c2a31]: /10.0.0.5:4100 "
            "{org.wso2.carbon.core.clustering.hazelcast.wka.WKABasedMembershipScheme}")


@pytest.mark.parametrize("line, level, logger, thread", [
    (OLD, "INFO", LOG_MEDIATOR, None),
    (NEW, "INFO", LOG_MEDIATOR, "PassThroughMessageProcessor-7"),
    (TENANT, "ERROR", "org.apache.synapse.core.axis2.Axis2Sender", "PassThroughMessageProcessor-2"),
])
def test_both_layouts_parse(line, level, logger, thread):
    parsed = parse_line(line)
    assert (parsed.level, parsed.logger, parsed.thread) == (level, logger, thread)
    assert not parsed.message.endswith("}")  # the 6.2 layout's trailing {logger} is dropped
    assert parsed.message.startswith(("To: ", "Unexpected"))


def test_other_lines_are_skipped_crlf_and_stack_traces_included():
    text = "\r\n".join([
        OLD, "java.lang.NullPointerException", "\tat org.apache.synapse.Foo.bar(Foo.java:42)",
        NEW, "", "Starting WSO2 Carbon...", JOINED, LEFT_OLD, JOINED.replace("10.0.0.5", "10.0.0.6"),
    ]) + "\r\n"
    lines = list(parse_lines(text))
    assert len(lines) == 5
    assert count_log_mediator(lines, "/services/SampleProxy") == 2
    assert count_log_mediator(lines, "/services/Other") == 0
    events = member_events(lines)
    assert [(e.event, e.host, e.port) for e in events] == [
        ("joined", "10.0.0.5", 4100), ("left", "10.0.0.5", 4100), ("joined", "10.0.0.6", 4100)]
    assert current_members(events) == {("10.0.0.6", 4100): "d2e1a1b6-7c1f-4b4e-8b1f-0f6f7d0c2a31"}
