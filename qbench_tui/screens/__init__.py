"""Modal screens: help, confirmations, result detail, comparison, chart, open model, export, sort."""
