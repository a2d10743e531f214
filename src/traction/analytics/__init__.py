"""Analytics: declarative specs (funnels, trends, retention, …) compiled to SQL on the event log."""
