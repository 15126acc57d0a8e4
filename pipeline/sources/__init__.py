"""Ways sign-in logs reach the raw topic: file replay now, the Event Hubs bridge next."""
