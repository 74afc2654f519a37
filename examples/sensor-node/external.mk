include $(sort $(wildcard $(BR2_EXTERNAL_SENSOR_NODE_PATH)/package/*/*.mk))
