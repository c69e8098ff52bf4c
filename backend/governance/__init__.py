"""Usage, quotas, rate limits, response cache, audit."""
