"""HTTP handlers, one module per resource; plain `async def verb_noun(request)` functions."""
