# Names vulture reports as unused that are used where it cannot see (hack/deadcode.sh passes this file to
# vulture with the code). Each line says where the use is. Not imported by anything.
# ruff: noqa

# simulator/report.py RequestOutcome: a field of the JSON report (dataclasses.asdict), read by its readers.
_.latency_seconds

# agent/config.py validate: the API for programs that embed the agent (AgentConfig's docstring); the
# test tiers and the benchmarks embed it that way.
_.validate
# agent/config.py Setting.expected_chart_default: the declaration's word on the chart's values.yaml,
# checked against the chart by tests/agent_io/test_config.py (the chart is not Python).
_.expected_chart_default
# simulator/cli_args.py: loaded through the entry-point group hotplug_agent.commands (pyproject.toml).
_.SIMULATE
_.CLUSTER
# tests: pytest fixtures requested by parameter name.
_.restore_logging
_.fallback
# metrics/definitions.py all_sample_names: every exposed sample name, what the checks of the dashboard,
# the alert rules and the docs compare against (tests/observability).
_.all_sample_names
