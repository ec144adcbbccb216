"""The media core: Exotel's AgentStream (Voicebot applet) WebSocket, served to Python bots."""
