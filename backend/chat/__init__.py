"""The one chat pipeline (admit → retrieve → generate → record) and what it is made of: its request and result
types, the mapping of model failures, the turn cache, the follow-up query rewrite, and the conversations kept for
the chat's history. The UI, the REST and OpenAI-compatible routes and the studio all call it."""
