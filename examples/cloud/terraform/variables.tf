variable "region" {
  description = "AWS region of the web tier"
  type        = string
  default     = "eu-west-1"
}

variable "vpc_cidr" {
  type    = string
  default = "10.0.0.0/16"
}

variable "corporate_cidr" {
  description = "The office's public range: the only source allowed to SSH in"
  type        = string
  default     = "203.0.113.0/24"
}
