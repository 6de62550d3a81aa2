"""The routing-policy engine: ops-edited YAML files decide where each request goes."""
